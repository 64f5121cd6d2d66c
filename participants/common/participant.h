/* participant.h -- the participant framework (participants/common). */
#ifndef SAGA_PARTICIPANT_H
#define SAGA_PARTICIPANT_H
#endif
